"""Arena: pairwise judged battles between answerers, and the ratings drawn from them."""
