"""Pure building blocks shared by the stages."""
