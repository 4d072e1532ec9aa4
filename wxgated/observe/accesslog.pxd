cimport cython


cdef class AccessLog:
    cdef public bint enabled
    cdef public int fd
    cdef public list _buf
    cdef public bint _scheduled
    cdef public long _sec
    cdef public str _sec_text
    cdef public str _pid
    cdef public object _loop

    @cython.locals(sec=long)
    cpdef str _ts(self, double now)
    @cython.locals(up_ms=double, fields=tuple, line=str)
    cpdef log(self, req, int status, Py_ssize_t bytes_in, Py_ssize_t bytes_out,
              double duration)
    cpdef flush(self)


@cython.locals(data=bytes)
cpdef bint _plain(str text)
@cython.locals(thousandths=long)
cpdef str _three_places(double value)
