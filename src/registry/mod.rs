//! Distribution API client: references, pull, push, auth, mirrors, retries, blob store.
