"""The nbpipe runner service: scheduler, metadata database, HTTP API.

Imports the SDK's package format, executors and stores; never widgets, magics or Lab code.
"""
