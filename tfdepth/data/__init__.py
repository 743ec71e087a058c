"""Data: the record schema, shard writing, manifests, the synthetic generator and the tf.data pipeline."""
