cpdef tuple request_target(bytes url, rules)
