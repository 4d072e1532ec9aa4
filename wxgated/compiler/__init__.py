"""From routes.yaml to a running Snapshot: the JSON Schema assembled from the core and
every filter's and terminal's fragment, validation with file:line:col, the semantic
checks, and the compile into routers, chains and upstream pools.

Apart from wxgated.config (the reading helpers every feature may use: units, specs,
errors, the YAML loader) because this package imports every feature: keeping the two
apart is what keeps package imports free of cycles.
"""
