cimport wxgated.http.server
from wxgated.http.body cimport RequestBody
from wxgated.http.message cimport Request, Response


cdef class Cycle:
    cdef public wxgated.http.server.GatewayProtocol conn
    cdef public RequestBody body

    cpdef bint _unread(self)
    cpdef bint _may_keep(self, Request req, bint unread)
    cpdef bint _sent(self, Request req, Response resp, bint keep, bint unread)
