"""Token shards on disk (litdata) and the DataModule that streams them."""
