//! Sacred benchmarks: criterion micro-benches live in `benches/`; see `docs/benchmarks.md`.
