"""The gateway layer: the request engine, the dispatcher that feeds it and the envelope."""
