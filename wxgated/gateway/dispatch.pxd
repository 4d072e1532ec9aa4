from wxgated.http.message cimport Request, Response
from wxgated.http.serving cimport Dispatcher
from wxgated.observe.accesslog cimport AccessLog
from wxgated.observe.metrics cimport RouteMetrics
from wxgated.observe.trace cimport trace_id_for


cdef class GatewayDispatcher(Dispatcher):
    cdef public object snapshot
    cdef public AccessLog access_log
    cdef public object client_ip
    cdef public Py_ssize_t in_flight
    cdef public RouteMetrics _unmatched
    cdef public object _time

    cpdef Response _match(self, Request req)
    cpdef start(self, Request req, sink)
    cpdef Request begin(self, str peer_ip, list headers, dict by_name, str method, str path,
                        str query, str version, bint keep_alive)
    cpdef Response reject(self, Request req, int status, str msg, str reason)
    cpdef done(self, Request req, int status, Py_ssize_t bytes_in, Py_ssize_t bytes_out)
    cpdef refused(self, str peer_ip, int status, bytes url, str trace_id)
    cpdef abandon(self, Request req)
