"""The selection masks: straight-through estimators, the mask types, extend and merge, chains, dynamic masks."""
