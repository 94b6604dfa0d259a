"""Every user-visible string of the Slack app, in one place (Slack mrkdwn)."""

from __future__ import annotations

APOLOGY = "Sorry, something went wrong on my side. The error was logged; please try again later."
RATE_LIMITED = ":hourglass: {error}"
ERROR = ":warning: {error}"

EMPTY_QUESTION = (
    "Ask me something after the mention, e.g. `@PixRAG which slide shows the Q3 revenue?`, "
    "or share an image with the mention to find similar ones."
)
DEFAULT_IMAGE_QUESTION = "What does this image show? Which indexed images are similar to it?"
ASK_USAGE = "Usage: `/ask <question>`"
ASK_ACK = ":mag: Looking for an answer to: {question}"
ASKED = "<@{user}> asked: {question}"
PIXRAG_USAGE = (
    "*PixRAG commands*\n"
    "• `/ask <question>`: answer from the indexed images, slides and PDFs\n"
    "• `/pixrag index`: add files to this workspace's index\n"
    "• `/pixrag forget <item id | message link>`: remove what was indexed\n"
    "• `/pixrag autoindex on|off`: index every file shared in this channel (admins)\n"
    "• `/pixrag backfill [#channel] [YYYY-MM-DD]`: index the files a channel already holds "
    "(admins)\n"
    "• `/pixrag stats`: what is indexed in this workspace"
)
NOT_ADMIN = "Only workspace admins (or users listed in `[slack] admins`) may do that."
NOT_AUTHOR = "Only the person who shared it (or an admin) may remove it."
AUTOINDEX_ON = (
    ":white_check_mark: Auto-indexing is *on* for <#{channel}>: images and PDFs shared here "
    "from now on are indexed.{private}"
)
AUTOINDEX_PRIVATE = " This channel is private: its files are only retrievable here."
AUTOINDEX_OFF = "Auto-indexing is *off* for <#{channel}>. Already indexed files stay indexed."
FORGET_DONE = ":wastebasket: Removed {n} item(s) from the index."
FORGET_NOT_FOUND = "`{ref}` is not in this workspace's index."
FORGET_USAGE = "Usage: `/pixrag forget <item id | message link>`"
STATS = "*{items}* item(s) indexed in this workspace ({kinds}). Model: `{model}`."

NO_FILES = "That message has no images or PDFs I can use."
NO_RESULTS = "Nothing similar is indexed in this workspace yet."
SIMILAR_HEADER = "*Similar images* to {name}:"
SEARCH_HEADER = "*Results* for {question}:"
SOURCES_HEADER = "*Sources*"
NO_MODEL_HEADER = "No answer model is configured here; these are the best matches:"
ALSO_RETRIEVED = "Also retrieved"
NO_SOURCES = "_The index has nothing that matches this question._"
UNAVAILABLE = "_The answer model is unavailable right now; here are the sources I found._"
TRUNCATED = "… (truncated)"
THUMBNAILS_COMMENT = "Source thumbnails"
FEEDBACK_PROMPT = "Was this helpful?"
FEEDBACK_UP = "Helpful"
FEEDBACK_DOWN = "Not helpful"
FEEDBACK_THANKS = "Thanks for the feedback! It helps tune the search for everyone here."

INDEX_MODAL_TITLE = "Add to PixRAG"
INDEX_MODAL_SUBMIT = "Index"
INDEX_MODAL_LABEL = "Images, PDFs or documents"
INDEX_MODAL_HELP_PUBLIC = "Files added here can be found by everyone in this workspace."
INDEX_MODAL_HELP_PRIVATE = "Files added here are only retrievable in <#{channel}>."
INDEX_REPORT = ":card_index: Indexed {indexed} item(s){skipped}{failed}."
INDEX_SKIPPED = ", skipped {n} ({reasons})"
INDEX_FAILED = ", {n} failed ({reasons})"

FILE_TOO_LARGE = "larger than the {limit:g} MB limit"
FILE_NOT_IMAGE = (
    "Slack sent a web page instead of the file (is the app allowed to read files here?)"
)
FILE_DOWNLOAD_FAILED = "could not be downloaded from Slack (HTTP {status})"
FILE_UNREACHABLE = "could not be downloaded from Slack"
FILE_HOST_REFUSED = (
    "is not hosted on Slack's own file servers over https, so I did not fetch it "
    "(the app's token is only ever sent to Slack)"
)
FILE_LARGER_THAN_SAID = "turned out larger than Slack announced, so I stopped downloading it"
FILE_EXTERNAL = "is an external file (Google Drive, Dropbox, ...): share the file itself"

HOME_TITLE = "PixRAG"
HOME_INTRO = (
    "I answer questions about the images, slides and PDFs shared in this workspace, "
    "and find similar images."
)
HOME_STATS = "*Indexed here:* {items} item(s){kinds}\n*Image model:* `{model}`{text_model}"
HOME_HOWTO = (
    "*How to use me*\n"
    "• Mention me with a question: `@PixRAG where is the architecture diagram?` "
    "(follow-up questions in the thread keep the context)\n"
    "• Share an image or PDF with a mention (or in a DM) to find similar ones\n"
    "• `/ask <question>` anywhere; message shortcut *Find similar images*\n"
    "• Add files with `/pixrag index` or the *Add files to PixRAG* shortcut; admins can "
    "turn on `/pixrag autoindex on` in a channel\n"
    "• Files from private channels and DMs are only found there; nothing leaves this workspace."
)

BACKFILL_USAGE = "Usage: `/pixrag backfill [#channel] [since, e.g. 2024-05-31]`"
BACKFILL_BAD_SINCE = "`{since}` is not a date: use the form 2024-05-31."
BACKFILL_RUNNING = (
    "A backfill of <#{channel}> is already running (here or in another PixRAG process): "
    "see its progress message there."
)
BACKFILL_NOT_IN_CHANNEL = (
    "I am not in <#{channel}>: invite me first (`/invite @PixRAG`), then run the backfill again."
)
BACKFILL_SLACK_ERROR = "Slack answered `{error}`"
BACKFILL_STARTED = (
    ":arrows_counterclockwise: Backfill of <#{channel}> started: progress is posted there. "
    "Files already indexed are skipped; a stopped backfill continues where it got to when run "
    "again."
)
BACKFILL_STARTING = ":arrows_counterclockwise: Backfill of <#{channel}>: reading the history…"
BACKFILL_COUNTS = "indexed {done:,} of ~{total:,} files, {failed:,} failed"
BACKFILL_COUNTS_SO_FAR = "indexed {done:,} files so far, {failed:,} failed"
BACKFILL_PROGRESS = ":arrows_counterclockwise: Backfill of <#{channel}>: {counts}"
BACKFILL_ALREADY = " ({n:,} were already indexed)"
BACKFILL_FINISHED = (
    ":white_check_mark: Backfill of <#{channel}> finished: indexed {done:,} files, "
    "{failed:,} failed"
)
BACKFILL_CANCELLED = (
    ":octagonal_sign: Backfill of <#{channel}> cancelled: {counts}. "
    "Run `/pixrag backfill` again to continue."
)
BACKFILL_STOPPED = (
    ":warning: Backfill of <#{channel}> stopped ({error}): {counts}. "
    "Run `/pixrag backfill` again to continue."
)
BACKFILL_REASON = "• `{name}`: {reason}"
BACKFILL_MORE = "• … and {n:,} more"
BACKFILL_CANCEL = "Cancel"
BACKFILL_CANCELLING = "Stopping the backfill of <#{channel}> after the files in hand."
BACKFILL_NOT_RUNNING = "No backfill of <#{channel}> is running."
BACKFILL_MODAL_TITLE = "Backfill a channel"
BACKFILL_MODAL_SUBMIT = "Start"
BACKFILL_MODAL_CHANNEL = "Channel (invite me there first)"
BACKFILL_MODAL_SINCE = "Only files shared since (optional)"
HOME_BACKFILL = (
    "*Backfill* (admins): index the images, slides and PDFs a channel already holds. "
    "Progress is posted in that channel; files already indexed are skipped."
)
HOME_BACKFILL_BUTTON = "Backfill a channel"
