cdef class MemoryState:
    cdef public dict _data
    cdef public dict _locks
    cdef public double _sweep_every
    cdef public double _next_sweep

    cpdef object get(self, str key)
