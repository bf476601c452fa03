"""A STAND-IN for a Qdrant server (NOT Qdrant), for the write-path benchmark and tests; see
benchmarks/standin_qdrant_server.py for what it answers and how to run it."""
