#include <errno.h>

#include "irp/error.h"

const char *irp_strerror(int err)
{
    switch (err) {
    case 0: return "success";
#define IRP_ERR_CASE(name, val, msg) case IRP_E##name: return msg;
    IRP_ERRNO_MAP(IRP_ERR_CASE)
#undef IRP_ERR_CASE
    default: return "unknown error";
    }
}

int irp_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0: return 0;
    case ENOMEM: return IRP_ENOMEM;
    case ENOENT: case ENOTDIR: return IRP_ENOENT;
    case EEXIST: return IRP_EEXISTS;
    case EACCES: case EPERM: case EROFS: return IRP_EACCES;
    case ENOSPC: case EDQUOT: case EFBIG: return IRP_ENOSPC;
    case EINVAL: return IRP_EINVAL;
    case EBUSY: case EAGAIN: return IRP_EBUSY;
    case ETIMEDOUT: return IRP_ETIMEDOUT;
    case ECANCELED: return IRP_ECANCELED;
    default: return IRP_EIO;
    }
}
