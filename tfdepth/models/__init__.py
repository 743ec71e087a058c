"""Models: encoders (features by name), decoders / heads (depth in metres), and the builder."""
