cimport cython

cdef class _FreshIds:
    cdef public str digits
    cdef public Py_ssize_t at

    @cython.locals(at=Py_ssize_t)
    cpdef str take(self)


cdef _FreshIds _FRESH

cpdef tuple trace_id_for(bytes x_trace_id, bytes traceparent)
cpdef str new_trace_id()
