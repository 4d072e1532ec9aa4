from wxgated.http.message cimport Request


cdef class TokenSource:
    cdef public object cookie
    cdef public object query

    cpdef object extract(self, Request req)


cdef class Authenticator:
    cdef public object ring
    cdef public object sessions
    cdef public bint check_session
    cdef public TokenSource source
    cdef public object by_appid
    cdef public object appids

    cpdef object authenticate(self, Request req)
    cpdef object _store(self, dict claims)
    cpdef dict _claims(self, Request req)


cpdef tuple _live(dict claims, session)
cpdef object _unchecked(dict claims)
cpdef str _sid(dict claims)
