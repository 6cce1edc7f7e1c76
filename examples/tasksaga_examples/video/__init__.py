"""The video pipeline of seed 001: ffprobe, parallel ffmpeg transcodes with a conditional 4K
rendition, thumbnails, a catalog row in Postgres and a webhook."""
