/*
 * The embedded scripts (see scripts.h).
 */
#include "proto/scripts.h"

#include "inv_scripts_gen.h"

static const char commit_src[] = INV__SCRIPT_COMMIT_SRC;
static const char unlock_src[] = INV__SCRIPT_UNLOCK_SRC;
static const char soft_src[] = INV__SCRIPT_SOFT_SRC;
static const char log_append_src[] = INV__SCRIPT_LOG_APPEND_SRC;

const inv_script_t inv_script_commit = {
    "commit", commit_src, INV__SCRIPT_COMMIT_LEN, INV__SCRIPT_COMMIT_SHA};
const inv_script_t inv_script_unlock = {
    "unlock", unlock_src, INV__SCRIPT_UNLOCK_LEN, INV__SCRIPT_UNLOCK_SHA};
const inv_script_t inv_script_soft = {"soft", soft_src, INV__SCRIPT_SOFT_LEN,
                                      INV__SCRIPT_SOFT_SHA};
const inv_script_t inv_script_log_append = {"log_append", log_append_src,
                                            INV__SCRIPT_LOG_APPEND_LEN,
                                            INV__SCRIPT_LOG_APPEND_SHA};
