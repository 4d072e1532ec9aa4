cimport cython

from wxgated.http.body cimport RequestBody
from wxgated.http.cycle cimport Cycle
from wxgated.http.deadlines cimport Timed
from wxgated.http.flowcontrol cimport FlowControl
from wxgated.http.framing cimport fields_size, head_fields
from wxgated.http.message cimport Body, Request
from wxgated.http.serving cimport Dispatcher, ServerConfig
from wxgated.http.target cimport request_target
from wxgated.http.writer cimport ResponseWriter


cdef class GatewayProtocol(Timed):
    cdef public Dispatcher d
    cdef public ServerConfig cfg
    cdef public object loop
    cdef public object parser
    cdef public object transport
    cdef public str peer_ip
    cdef public FlowControl flow
    cdef public ResponseWriter writer
    cdef public Cycle cycle
    cdef public object answer
    cdef public object pipeline
    cdef public bint active
    cdef public bint closed
    cdef public object tunnel
    cdef public bytes _url
    cdef public list _headers
    cdef public RequestBody _body
    cdef public Py_ssize_t bytes_in
    cdef public double _body_by
    cdef public bint _parsing
    cdef public bint _head_timed
    cdef public bint _in_head
    cdef public Py_ssize_t _head_bytes
    cdef public object _refusal
    cdef public tuple _held

    cpdef on_deadline(self)
    cpdef _arm(self, double seconds)
    cpdef _disarm(self)
    cpdef _arm_body(self)
    cpdef _reject(self, int status, str msg)
    cpdef Py_ssize_t _head_size(self)
    @cython.locals(req=Request, body=RequestBody, length=object, by_name=dict)
    cpdef on_headers_complete(self)
    cpdef _start(self, Request req, RequestBody body)
    cpdef next(self)
    cpdef bint _idle(self)
    cpdef linger(self)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
