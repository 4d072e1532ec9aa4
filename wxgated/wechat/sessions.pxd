
cdef class SessionStore:
    cdef public object state
    cdef public str prefix
    cdef public double ttl
    cdef public object _box
    cdef public dict _parsed

    cpdef object lookup(self, str sid)
    cpdef object _session(self, str sid, raw)
