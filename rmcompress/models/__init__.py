"""Models: reward-model architectures, the project's layers, losses, the model directory, backbones."""
