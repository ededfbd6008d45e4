"""Protobuf <-> core conversion and validation, shared by every transport (gRPC, NATS).

A transport decodes its wire format with this package, calls the core, and encodes the
answer. The core never sees a protobuf message.
"""
