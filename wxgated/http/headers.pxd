cimport cython

from wxgated.http.message cimport Request


@cython.locals(parts=list, kept=Py_ssize_t, special=bint, block=bytes)
cpdef tuple request_block(Request req, bint keep_host)
cpdef bytes forward_target(Request req)
@cython.locals(n=Py_ssize_t, c=cython.uchar)
cpdef Py_ssize_t _controls(bytes text)
@cython.locals(out=list, special=bint)
cpdef list response_headers(list headers, bint switching=*, bint length=*)
