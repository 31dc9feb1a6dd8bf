set -eu
source_image=wbsaleshub:staging-0123456789ab
image=wbsaleshub:production-0123456789ab
image_id=sha256:0000000000000000000000000000000000000000000000000000000000000000
say() { printf 'promote: %s\n' "$*" >&2; }
if ! found=$(docker image inspect --format '{{.Id}}' "$source_image" 2>/dev/null); then
  say "FAILED: $source_image is not on this host; promotion needs the source stack's Docker engine (or unset workhub:promoteFrom to build here)"
  exit 1
fi
if [ -n "$image_id" ] && [ "$found" != "$image_id" ]; then
  say "FAILED: $source_image is now $found, not the $image_id that was verified; run the source stack again"
  exit 1
fi
if [ "$image" != "$source_image" ]; then
  docker tag "$source_image" "$image"
fi
say "$image is $source_image ($found)"
printf '{"image": "%s", "image_id": "%s", "from": "%s"}\n' "$image" "$found" "$source_image"
