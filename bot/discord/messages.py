"""Every user-visible string of the Discord adapter, in one place.

Placeholders for names and references take :func:`bot.discord.markdown.code` output (already
an inline code span); untrusted text never fills a placeholder raw."""

from __future__ import annotations

APOLOGY = "Sorry, something went wrong on my side. It has been logged; please try again later."
NO_RESULTS = (
    "Nothing in this server's index matches that. Try other words, or `/index` some images."
)
NO_SOURCES_ANSWER = "I found nothing indexed here that answers this."
NOT_AN_IMAGE = "{name} is not an image. Attach a PNG, JPEG, WebP or GIF."
NOT_INDEXABLE = (
    "{name} is not a file I can index. Attach images, PDFs or text documents (.txt, .md, .csv)."
)
NO_ATTACHMENTS = (
    "Attach at least one image, PDF or text document to `/index`, or give a link to a message "
    "that has some."
)
MESSAGE_HAS_NO_IMAGES = "That message has no images, PDFs or text documents I can use."
MESSAGE_HAS_NO_QUERY_IMAGE = "That message has no image to search with."
TOO_LARGE = "{name} is {size:.1f} MB; the limit here is {limit:g} MB. Try a smaller file."
TOO_MANY = "At most {limit} attachments at a time, please (you gave {count})."
NOT_DISCORD_URL = "I only fetch files uploaded to Discord itself ({name} is hosted elsewhere)."
DOWNLOAD_FAILED = "I could not download {name} from Discord. Try uploading it again."
LARGER_THAN_SAID = (
    "{name} turned out larger than Discord announced (or than {limit:g} MB): not downloaded."
)
BAD_LINK = "That is not a link to a message in this server. Use *Copy Message Link* on a message."
LINK_NOT_FOUND = "I cannot read that message (deleted, or a channel I cannot see)."
RATE_LIMITED = "Easy there! You can send {limit} requests a minute; try again in {seconds} s."
NOT_MANAGER = "Only members with the **{role}** role can do that here."
NOT_MANAGER_PERMISSION = "Only members who can **Manage Messages** can do that here."
NOT_ADMIN = "Only server admins (**Manage Server**) can change auto-indexing."
NOT_ALLOWED_FORGET = (
    "Only the person who posted it or a PixRAG manager can remove that from the index."
)
NOT_ALLOWED_HERE = "You cannot use that command here."
STOPPING = "PixRAG is restarting; please try again in a minute."
DM_ONLY_GUILD = "Auto-indexing is for server channels; in DMs use `/index` directly."
FORGOT = "Removed {count} item(s) from the index."
NOTHING_TO_FORGET = "Nothing indexed here matches {ref}."
AUTOINDEX_ON = (
    "Auto-indexing is **on** in {channel}: images, PDFs and text documents posted here will be "
    "searchable"
    "{privacy}. Deleting a message removes what was indexed from it."
)
AUTOINDEX_PRIVATE = " (only from this channel, because it is private)"
AUTOINDEX_OFF = "Auto-indexing is **off** in {channel}. What was indexed stays until `/forget`."
STATS = (
    "**{items}** item(s) indexed here{kinds}. Model: `{model}`. Auto-indexed channels: {channels}."
)
INDEXED = "Indexed {indexed} item(s)."
INDEX_SKIPPED = "Skipped {source}: {reason}"
INDEX_FAILED = "Could not index {source}: {error}"
FEEDBACK_THANKS = "Thanks for the feedback!"
FEEDBACK_EXPIRED = "Thanks! (This reply is too old to link your feedback to its question.)"
MORE_GONE = "That item is no longer in the index."
ANSWER_TRUNCATED = "\n… (answer truncated)"
ANSWER_UNAVAILABLE = "The answer model is unavailable right now; here are the sources I found."
ALSO_RETRIEVED = "also retrieved"
SCORE = "score {score:.3f}"
HELPFUL = "Helpful"
NOT_HELPFUL = "Not helpful"
MORE_LIKE = "More like #{n}"
CTX_FIND_SIMILAR = "Find similar images"
CTX_ADD = "Add to PixRAG"



def rate_limited(limit: int, retry_after: float) -> str:
    return RATE_LIMITED.format(limit=limit, seconds=max(1, round(retry_after)))

# /pixrag backfill
BACKFILL_NOT_TEXT = "Backfill works on text channels (and their threads): pick one with `channel`."
BACKFILL_BAD_SINCE = "`{since}` is not a date: use the form 2024-05-31."
BACKFILL_RUNNING = (
    "A backfill of {channel} is already running (here or in another PixRAG process): "
    "see its progress message there."
)
BACKFILL_STARTED = (
    "Backfill of {channel} started: progress is posted there. Files already indexed are "
    "skipped; a stopped backfill continues where it got to when run again."
)
BACKFILL_CANNOT_POST = "I cannot post in {channel} (its progress goes there): check my permissions."
BACKFILL_STARTING = "Backfill of {channel}: reading the history…"
BACKFILL_COUNTS = "indexed {done:,} of ~{total:,} files, {failed:,} failed"
BACKFILL_COUNTS_SO_FAR = "indexed {done:,} files so far, {failed:,} failed"
BACKFILL_PROGRESS = "Backfill of {channel}: {counts}"
BACKFILL_ALREADY = " ({n:,} were already indexed)"
BACKFILL_FINISHED = "Backfill of {channel} finished: indexed {done:,} files, {failed:,} failed"
BACKFILL_CANCELLED = (
    "Backfill of {channel} cancelled: {counts}. Run `/pixrag backfill` again to continue."
)
BACKFILL_STOPPED = (
    "Backfill of {channel} stopped ({error}): {counts}. Run `/pixrag backfill` again to continue."
)
BACKFILL_REASON = "• `{name}`: {reason}"
BACKFILL_MORE = "• … and {n:,} more"
BACKFILL_CANCEL = "Cancel"
BACKFILL_CANCELLING = "Stopping the backfill of {channel} after the files in hand."
BACKFILL_NOT_RUNNING = "No backfill of {channel} is running."
BACKFILL_FORBIDDEN = "I cannot read the history of {channel} (Read Message History)"
BACKFILL_HISTORY_FAILED = "Discord did not return the history of {channel}; try again later"
