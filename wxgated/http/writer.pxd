cimport cython

from wxgated.http.flowcontrol cimport FlowControl
from wxgated.http.message cimport Request, Response


cdef class ResponseWriter:
    cdef public object transport
    cdef public FlowControl flow
    cdef public Py_ssize_t bytes_out

    @cython.locals(data=bytes)
    cpdef bint write_now(self, Request req, Response resp, bint keep_alive)


@cython.locals(status=int, head_only=bint, chunked=bint, parts=list)
cpdef tuple head_parts(Request req, Response resp, bint keep_alive)
cpdef bytes status_line(int status)
