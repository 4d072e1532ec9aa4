from wxgated.http.deadlines cimport Deadlines
from wxgated.http.message cimport Request, Response


cdef class ServerConfig:
    cdef public Py_ssize_t max_header
    cdef public Py_ssize_t max_body
    cdef public double header_timeout
    cdef public double idle_timeout
    cdef public object scheme
    cdef public Py_ssize_t max_connections
    cdef public double body_timeout
    cdef public Py_ssize_t request_buffer
    cdef public object path_rules
    cdef public bint allow_underscores


cdef class Dispatcher:
    cdef public ServerConfig cfg
    cdef public set connections
    cdef public Deadlines deadlines
    cdef public bint shutting_down

    cpdef start(self, Request req, sink)
    cpdef Request begin(self, str peer_ip, list headers, dict by_name, str method, str path,
                        str query, str version, bint keep_alive)
    cpdef Response reject(self, Request req, int status, str msg, str reason)
    cpdef done(self, Request req, int status, Py_ssize_t bytes_in, Py_ssize_t bytes_out)
    cpdef refused(self, str peer_ip, int status, bytes url, str trace_id)
    cpdef abandon(self, Request req)
