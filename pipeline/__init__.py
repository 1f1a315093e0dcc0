"""What needs both a network (models/) and the threshold rule (strategies/): training, the
test-split evaluation and the Predictor the daemon serves. models/ never imports strategies/."""
