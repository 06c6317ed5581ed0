"""The lowest layer: helpers every other part of ``app`` may use, importing nothing above."""
