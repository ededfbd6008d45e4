"""The search service's HTTP side: the JSON API and the admin console, on the gRPC servicers.

app        the ASGI app (routes, health, problem handlers, metrics) and its uvicorn server
api        /api/semantic/* routes, each one gRPC method of Search or Admin
gateway    request -> caller -> servicer call -> protobuf-JSON response
security   bearer token or session cookie, CSRF, the same role table as gRPC
problems   domain errors -> HTTP status and RFC 9457 problem documents (one table)
openapi    the OpenAPI 3.1 document (committed as openapi.json)
"""
