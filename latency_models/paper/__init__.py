"""The ShuffleNetV2 paper as data: its measured tables and the G1-G4 micro-benchmark networks."""
