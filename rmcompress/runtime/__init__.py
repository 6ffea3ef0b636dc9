"""Running artifacts: the TFLite converter and interpreter runner, SavedModel signatures."""
