cdef class FlowControl:
    cdef public object transport
    cdef public bint read_paused
    cdef public bint write_paused
    cdef public bint lost
    cdef public object _waiter

    cpdef bint pause_reading(self)
    cpdef bint resume_reading(self)
    cpdef pause_writing(self)
    cpdef resume_writing(self)
    cpdef connection_lost(self)
    cpdef _wake(self)
