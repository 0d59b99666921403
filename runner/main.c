#include "irp/cli.h"

int main(int argc, char **argv)
{
    return irp_cli_main(argc, argv);
}
