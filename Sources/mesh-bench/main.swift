print("mesh-bench: coming soon")
