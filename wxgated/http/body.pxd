
cdef class RequestBody:
    cdef public object proto
    cdef public Py_ssize_t limit
    cdef public object length
    cdef public bint expect_continue
    cdef public object chunks_q
    cdef public Py_ssize_t buffered
    cdef public Py_ssize_t received
    cdef public bint done
    cdef public object error
    cdef public object waiter
    cdef public bint started
    cdef public bint too_large

    cpdef feed(self, bytes chunk)
    cpdef finish(self)
    cpdef fail(self, BaseException exc)
    cpdef _wake(self)
    cpdef object whole(self)
