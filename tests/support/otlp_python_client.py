"""Sends known metrics to an OTLP endpoint with the official OpenTelemetry Python SDK.

Usage: otlp_python_client.py grpc|http ENDPOINT

A counter, a gauge and a histogram with attributes of every type, flushed once; used by
tests/otlp_python_client.rs to check that fovea's `otlp` receiver gets exactly these values.
"""

import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource


def exporter(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, compression=Compression.Gzip)


def main():
    protocol, endpoint = sys.argv[1], sys.argv[2]
    reader = PeriodicExportingMetricReader(exporter(protocol, endpoint), export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "python-client", "k8s.node.name": "node-7"}),
        metric_readers=[reader],
        views=[View(instrument_name="http.server.duration", aggregation=ExplicitBucketHistogramAggregation([1.0, 5.0, 10.0]))],
        # Shutting down would export a second time; the test expects exactly one request.
        shutdown_on_exit=False,
    )
    meter = provider.get_meter("fovea.test", "1.2.3")

    counter = meter.create_counter("requests", unit="{request}", description="Requests served")
    counter.add(5, {"route": "/a", "code": 200, "cached": True, "ratio": 0.5})
    counter.add(7, {"route": "/a", "code": 200, "cached": True, "ratio": 0.5})
    counter.add(1, {"route": "/b", "code": 503, "cached": False, "ratio": 1.5})

    gauge = meter.create_gauge("temperature", unit="Cel", description="Room temperature")
    gauge.set(21.5, {"room": "lab"})

    histogram = meter.create_histogram("http.server.duration", unit="ms", description="Latency")
    for v in (0.5, 3.0, 7.0, 12.0):
        histogram.record(v, {"route": "/a"})

    if not provider.force_flush(timeout_millis=10_000):
        sys.exit("force_flush failed")


if __name__ == "__main__":
    main()
