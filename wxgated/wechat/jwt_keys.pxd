cdef class KeyRing:
    cdef public list keys
    cdef public dict _by_kid
    cdef public object issuer
    cdef public object ttl
    cdef public object audience
    cdef public double leeway
    cdef public object _cache
    cdef public Py_ssize_t _cache_size
    cdef public dict _jwks

    cpdef dict verify(self, str token)
