"""Neural networks: Keras model builders behind one registry, and one training function."""
