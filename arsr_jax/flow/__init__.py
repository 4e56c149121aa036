"""Optical flow: TV-L1 estimation, backward warping, .flo I/O, quantisation, visualisation."""
