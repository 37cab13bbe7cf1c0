"""The banyan stack program: config, tier presets, capacity math, and the program that wires components."""
