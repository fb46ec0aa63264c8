"""Model references, loading (causal and seq2seq, float and 4-bit) and adapter merging."""
