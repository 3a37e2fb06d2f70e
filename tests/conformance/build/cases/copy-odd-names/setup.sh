touch "$(printf 'new\nline')" "$(printf 'tab\there')" 'back\slash' ./-dash '[x]' 'star*' 'q?'
touch "$(printf 'caf\303\251-nfc')" "$(printf 'cafe\314\201-nfd')" "$(printf '\360\237\223\246-box')"
