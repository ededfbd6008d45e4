"""The core: domain values, pure logic and the use cases, written against ``typing.Protocol``s.

What belongs here: node and version rules, the filter model and its validation, fusion,
recommendation scoring, diversity, journey maths, clustering, chunking, the 2-D projection,
and the use cases (write path, search, nearest, recommend, track, maintenance, consistency
checks, exploration) that call the ports in
:mod:`semantic.core.ports`. Nothing here imports asyncpg, grpc, protobuf or NATS: a store
implements the ports, a transport converts its wire format and calls the use cases.
"""
