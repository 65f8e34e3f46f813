// Linux-PAM for cm-webd's logins: one call that authenticates a user with a password and
// checks the account, the conversation answering every prompt with that password.
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>

static int cm_pam_conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *password) {
    if (n <= 0 || n > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (!r) return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        switch (msg[i]->msg_style) {
        case PAM_PROMPT_ECHO_OFF:
        case PAM_PROMPT_ECHO_ON:
            r[i].resp = strdup((const char *)password);
            if (!r[i].resp) goto fail;
            break;
        case PAM_ERROR_MSG:
        case PAM_TEXT_INFO:
            break;
        default:
            goto fail;
        }
    }
    *resp = r;
    return PAM_SUCCESS;
fail:
    for (int i = 0; i < n; i++) free(r[i].resp);
    free(r);
    return PAM_CONV_ERR;
}

/// PAM_SUCCESS when `user` may log in with `password` under `service` (auth and account).
static inline int cm_pam_check(const char *service, const char *user, const char *password) {
    struct pam_conv conv = { cm_pam_conversation, (void *)password };
    pam_handle_t *h = NULL;
    int rc = pam_start(service, user, &conv, &h);
    if (rc != PAM_SUCCESS) return rc;
    rc = pam_authenticate(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    if (rc == PAM_SUCCESS) rc = pam_acct_mgmt(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    pam_end(h, rc);
    return rc;
}

static inline const char *cm_pam_error(int rc) { return pam_strerror(NULL, rc); }
