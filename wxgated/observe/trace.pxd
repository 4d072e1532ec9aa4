cpdef tuple trace_id_for(bytes x_trace_id, bytes traceparent)
cpdef str new_trace_id()
