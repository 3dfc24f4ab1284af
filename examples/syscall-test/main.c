/* The HermitCore guide's system call test.
 *
 * Needs the two calls the guide adds in the syscall table (`doit syscall add`):
 *   my_syscall  (a new call; the guide's kernel side returns x + 42, so 54 for 12)
 *   rename      (a dummy of the Linux call that returns 0)
 * and a toolchain rebuilt with them.
 */
#include <stdio.h>
#include <my_syscall.h>

int main(int argc, char **argv)
{
	int res = my_syscall(12);
	/* Should return 54 */
	printf("my_syscall returns: %d\n", res);

	res = rename("./x", "./y");
	/* Should return 0 */
	printf("rename returns %d\n", res);

	return 0;
}
