"""Analysis of masks and models: statistics, overlap, dynamics, loss landscapes."""
