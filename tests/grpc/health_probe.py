#!/usr/bin/env python3
"""A gRPC health client from outside berth: grpcio's own stubs, as a
Kubernetes `grpc:` probe (or grpc_health_probe) would call berth.

    health_probe.py ADDRESS SERVICE              one Check; prints the status or the error code
    health_probe.py ADDRESS SERVICE --watch N    prints the first N statuses of a Watch
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    address, service = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            if len(sys.argv) > 4 and sys.argv[3] == "--watch":
                want = int(sys.argv[4])
                for i, resp in enumerate(stub.Watch(request, timeout=30)):
                    print(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status), flush=True)
                    if i + 1 >= want:
                        return 0
                return 0
            resp = stub.Check(request, timeout=5)
            print(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
        except grpc.RpcError as e:  # the code is what a prober looks at
            print(e.code().name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
