"""Set-up shared by the tests and the benchmarks: the service stack and an S3 endpoint, as real processes."""
