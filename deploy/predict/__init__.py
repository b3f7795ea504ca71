"""Classify images and video with a bundle: the Classifier object (classifier), the image decoders
(decode), and predict's runs over files, videos and cameras (run)."""
