"""Side-by-side benchmarks against the official ``KubernetesJobOperator`` (``make bench``)."""
