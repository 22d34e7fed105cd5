"""A real grpc.health.v1 server (grpcio + grpcio-health-checking) for berth's
`grpc` check tests.

Why a script and not a Rust server: the check must be shown against the
reference implementation other clients (Kubernetes' grpc probe,
grpc-health-probe) talk to, not against berth's own idea of the protocol.

    health_server.py PORT [--tls CERT KEY [--client-ca CA]] [SERVICE=STATUS ...]

With --client-ca, clients must present a certificate signed by CA (mTLS).
Services start as given (default: "" and "app" SERVING). Each line on stdin
"SERVICE STATUS" (service "-" = the overall "" service; STATUS one of
SERVING, NOT_SERVING, UNKNOWN) changes a status and is answered with "ok" on
stdout. Prints "listening PORT" once it serves; exits when stdin closes.
"""

import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main(argv):
    port = int(argv[0])
    rest = argv[1:]
    tls = None
    client_ca = None
    if rest[:1] == ["--tls"]:
        tls = (rest[1], rest[2])
        rest = rest[3:]
    if rest[:1] == ["--client-ca"]:
        with open(rest[1], "rb") as f:
            client_ca = f.read()
        rest = rest[2:]
    initial = dict(arg.split("=", 1) for arg in rest) or {"": "SERVING", "app": "SERVING"}

    servicer = health.HealthServicer()
    for service, status in initial.items():
        servicer.set(service, health_pb2.HealthCheckResponse.ServingStatus.Value(status))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"127.0.0.1:{port}"
    if tls:
        with open(tls[0], "rb") as f:
            cert = f.read()
        with open(tls[1], "rb") as f:
            key = f.read()
        creds = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
        server.add_secure_port(address, creds)
    else:
        server.add_insecure_port(address)
    server.start()
    print(f"listening {port}", flush=True)

    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 2:
            continue
        service = "" if parts[0] == "-" else parts[0]
        servicer.set(service, health_pb2.HealthCheckResponse.ServingStatus.Value(parts[1]))
        print("ok", flush=True)
    server.stop(0)


if __name__ == "__main__":
    main(sys.argv[1:])
